# Sourced by build.sh and bisect-build.sh: the patch file names a quilt-style
# 'series' file lists, in order, one per line (comments and blanks dropped).
series_patches() { # DIR
	local line
	while read -r line; do
		line=${line%%#*}
		line=${line//[[:space:]]/}
		[ -n "$line" ] && echo "$line"
	done < "$1/series"
}
