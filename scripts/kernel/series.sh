# Sourced by build.sh and bisect-build.sh: the patch file names a quilt-style
# 'series' file lists, in order, one per line (comments and blanks dropped);
# without a series file, DIR's *.patch files in name order (git format-patch's).
series_patches() { # DIR
	local line
	if [ ! -f "$1/series" ]; then
		(cd "$1" && LC_ALL=C ls -1 -- *.patch)
		return
	fi
	while read -r line; do
		line=${line%%#*}
		line=${line//[[:space:]]/}
		[ -n "$line" ] && echo "$line"
	done < "$1/series"
}
