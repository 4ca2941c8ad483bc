#!/bin/sh
# Compress and expand a file through the hard-linked bzip2 names, count it with perl5.36.0,
# then make a git commit with fixed dates and print its hash, which depends only on the
# content, the author and the dates.
set -eu

work=$(mktemp -d)
seq 1 2000 > "$work/numbers.txt"
bzip2 -9 -k "$work/numbers.txt"
bunzip2 -t "$work/numbers.txt.bz2"
echo "bzcat: $(bzcat "$work/numbers.txt.bz2" | sha256sum | cut -c1-16)"
perl5.36.0 -ne '$sum += $_; END { print "perl5.36.0: sum $sum over $. lines\n" }' "$work/numbers.txt"

export GIT_AUTHOR_NAME=fleet GIT_AUTHOR_EMAIL=fleet@example.invalid
export GIT_COMMITTER_NAME=fleet GIT_COMMITTER_EMAIL=fleet@example.invalid
export GIT_AUTHOR_DATE='1700000000 +0000' GIT_COMMITTER_DATE='1700000000 +0000'
git init -q -b main "$work/repo"
cp "$work/numbers.txt" "$work/repo/"
git -C "$work/repo" add numbers.txt
git -C "$work/repo" commit -q -m 'Add numbers'
echo "git commit: $(git -C "$work/repo" rev-parse HEAD)"
echo "git files: $(git -C "$work/repo" ls-files)"
rm -rf "$work"
