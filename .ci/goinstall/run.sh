#!/usr/bin/env bash
# Installs this repository's commands with `go install module@version`, as
# a user would, from a module proxy made from the repository's own commits
# (none of its modules is on a public proxy), and checks what it installed.
#
#	bash .ci/goinstall/run.sh        the check, for HEAD (.ci/run calls it)
#	bash .ci/goinstall/run.sh -tidy  rewrite each command module's go.sum
#
# After moving a command module's requirement on this repository's modules
# (cd cmd/spotflow-journal && go mod edit -require=<path>@<pseudo-version>
# for the root module and redislimit, then commit), run it with -tidy: it
# runs `go mod tidy` in cmd/*/ against the proxy, which computes the go.sum
# lines of the versions required; commit go.mod and go.sum.
#
# The check, with v HEAD's pseudo-version v0.0.0-<committer time, UTC>-<hash>:
#  1. goinstall (this directory) writes the proxy: the root module and each
#     command module at v, and every version of this repository's modules
#     that they and the library sub-modules require, each zipped from its
#     commit as the go command zips a commit (so the go.sum hashes are the
#     ones users get), each checked to be a commit in HEAD's history with
#     the time its pseudo-version says. Only commits: with uncommitted
#     changes it warns that HEAD is what is checked.
#  2. from an empty directory, `go install <module>/cmd/<name>@v` of
#     spotflow-mock and of every command module; each `<name> -h` must exit 0.
#  3. each binary's build info (go version -m) must name, for this
#     repository's modules, only versions made in 1., with the hashes of
#     the zips made: nothing came from elsewhere.
#  4. in each command module as installed (HEAD's), `go mod tidy -diff` must
#     find nothing to change: go.mod requires exactly what builds it, and
#     go.sum has every line for those versions. `go install m@v` does not
#     read m's go.sum (tested: it installs with the lines for the root
#     module missing), but every build inside the module does.
#
# The environment, and why:
#  GOPROXY    file://<proxy made>, then file://<this machine's module
#             download cache> (no network once warm), then `go env GOPROXY`.
#  GOMODCACHE a new, empty one: no version of this repository's modules
#             cached by an earlier run can stand in for one the proxy lacks,
#             and none leaks into the machine's cache.
#  GONOSUMDB  github.com/spotflow-go/spotflowhttp (a prefix: the root module
#             and every module below it): these modules are in no checksum
#             database; every other module is still checked against GOSUMDB.
#             (There is no GONOSUMCHECK.) GOPRIVATE and GONOPROXY are set
#             empty, or a user's setting would send our modules "direct" to
#             GitHub instead of to the proxy.
#  GOFLAGS    -mod=readonly, whatever the user's: with -mod=mod, go install
#             resolves an import that the required versions lack by asking
#             the proxy for @latest (here HEAD's version) and succeeds, so a
#             command that does not build against what it requires passes.
#  GOWORK     off: the versions required, never the work tree.
#  GOBIN      a temporary directory. go install has -trimpath so that the
#             build cache serves although the module cache is a new
#             directory each run (8 s for the whole check here, against 49 s
#             without it; 2 shared cores, load 6).
# A shallow clone is skipped: the commits required may be missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

tidy=false
case ${1-} in
"") ;;
-tidy) tidy=true ;;
*) echo "usage: bash .ci/goinstall/run.sh [-tidy]" >&2; exit 2 ;;
esac

if [ "$(git rev-parse --is-shallow-repository)" = true ]; then
	echo "shallow clone: the history needed for go install is missing; skipped"
	exit 0
fi

root=github.com/spotflow-go/spotflowhttp
cache=$(go env GOMODCACHE)
fallback=$(go env GOPROXY)
tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" && rm -rf "$tmp"' EXIT

GOWORK=off go build -C .ci/goinstall -o "$tmp/goinstall" .
"$tmp/goinstall" -o "$tmp/proxy" >"$tmp/made"
sed 's/^/made: /' "$tmp/made"

export GOPROXY="file://$tmp/proxy,file://$cache/cache/download,$fallback"
export GOMODCACHE="$tmp/mod" GONOSUMDB="$root" GOPRIVATE= GONOPROXY=
export GOFLAGS=-mod=readonly GOWORK=off GOBIN="$tmp/bin"

# ours prints what the go.mod $1 requires of this repository's modules.
ours() {
	awk -v root="$root" '{ p = $1; v = $2; if (p == "require") { p = $2; v = $3 }
		if (p == root || index(p, root "/") == 1) print p, v }' "$1"
}

# go mod tidy must not choose versions of this repository's modules
# itself: when an import is missing from the version required, it would
# take @latest (HEAD's), which is a decision for whoever moves the
# requirement. Then go.mod and go.sum are put back as they were.
if $tidy; then
	for gomod in cmd/*/go.mod; do
		[ -f "$gomod" ] || continue
		m=${gomod%/go.mod}
		echo "go mod tidy ($m)"
		cp "$gomod" "$tmp/go.mod.before" && cp "$m/go.sum" "$tmp/go.sum.before"
		(cd "$m" && GOFLAGS=-mod=mod go mod tidy)
		if ! diff <(ours "$tmp/go.mod.before") <(ours "$gomod"); then
			cp "$tmp/go.mod.before" "$gomod" && cp "$tmp/go.sum.before" "$m/go.sum"
			echo "$m: go mod tidy changed the versions it requires of this repository (above):"
			echo "  it uses something the versions required lack; require a later commit. Nothing changed."
			exit 1
		fi
	done
	git status --short -- 'cmd/*/go.mod' 'cmd/*/go.sum'
	exit 0
fi

# What HEAD's version is, and which command modules there are.
headv=$(awk -v root="$root" '$1 == root && $5 == "head" { print $2 }' "$tmp/made")
cmds=(cmd/spotflow-mock)
for gomod in cmd/*/go.mod; do
	[ -f "$gomod" ] && cmds+=("${gomod%/go.mod}")
done

fail=0
installed=()
mkdir "$tmp/empty"
for c in "${cmds[@]}"; do
	name=${c##*/}
	echo "go install $root/$c@$headv"
	if ! (cd "$tmp/empty" && go install -trimpath "$root/$c@$headv"); then
		echo "$c: go install $root/$c@$headv fails (above): a user cannot install it"
		fail=1; continue
	fi
	installed+=("$c")
	if ! "$GOBIN/$name" -h >/dev/null 2>&1; then
		echo "$c: $name -h does not exit 0"; fail=1
	fi
	# Every module of this repository in the binary must be one made
	# above, with that zip's hash.
	if ! go version -m "$GOBIN/$name" | awk -v root="$root" -v made="$tmp/made" '
		BEGIN { while ((getline line < made) > 0) { split(line, f, " "); ok[f[1] " " f[2] " " f[3]] = 1 } }
		($1 == "mod" || $1 == "dep" || $1 == "=>") && ($2 == root || index($2, root "/") == 1) {
			if (!ok[$2 " " $3 " " $4]) { print "  " $2 " " $3 " " $4 ": not a version made from this repository"; bad = 1 }
		}
		END { exit bad }'; then
		echo "$c: $name was built from modules that did not come from this repository's commits"
		fail=1
	fi
done

# Each command module that installed (a failed install is reported above).
for c in "${installed[@]}"; do
	[ -f "$c/go.mod" ] || continue
	src="$GOMODCACHE/$root/$c@$headv"
	cp -r "$src" "$tmp/tidy-${c##*/}" && chmod -R u+w "$tmp/tidy-${c##*/}"
	if ! diff=$(cd "$tmp/tidy-${c##*/}" && go mod tidy -diff 2>&1); then
		echo "$c at HEAD: go mod tidy would change go.mod or go.sum (a line missing"
		echo "  from go.sum fails every build in the module; a requirement raised means"
		echo "  it does not build against what it requires):"
		echo "$diff" | sed 's/^/  /' | head -n 40
		echo "  fix: bash .ci/goinstall/run.sh -tidy, then commit $c/go.mod and $c/go.sum"
		fail=1
	fi
done
[ $fail = 0 ] && echo "go install of ${cmds[*]} at $headv: ok"
exit $fail
