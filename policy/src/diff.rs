//! A line diff for showing approvers what a new policy version changes.
//!
//! The edit script comes from Myers' O(ND) algorithm (a longest common subsequence of lines,
//! found without the N×M table a plain dynamic-programming LCS needs, which matters because a
//! policy with thousands of rules has tens of thousands of lines while a change touches few).

use std::fmt::Write;

/// Lines of context around each change.
const CONTEXT: usize = 2;

/// Past this many differing lines the minimal script costs too much memory to find (it grows
/// with the square of the distance); the changed region is then shown as removed and re-added,
/// which is still a correct diff.
const MAX_EDIT_DISTANCE: usize = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Same,
    Delete,
    Insert,
}

/// A unified-style diff of `old` against `new`: `@@ -a,b +c,d @@` hunk headers, then lines
/// prefixed with ' ', '-' or '+', with 2 lines of context. Empty when the texts have the same
/// lines.
pub fn diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let script = edit_script(&a, &b);
    render(&a, &b, &script)
}

/// The operations turning `a` into `b`, in order.
fn edit_script(a: &[&str], b: &[&str]) -> Vec<Op> {
    // Common ends are cheap to strip and keep the search small for the usual small edit.
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);

    let mut ops = vec![Op::Same; prefix];
    match myers(ma, mb) {
        Some(middle) => ops.extend(middle),
        None => {
            ops.extend(std::iter::repeat_n(Op::Delete, ma.len()));
            ops.extend(std::iter::repeat_n(Op::Insert, mb.len()));
        }
    }
    ops.extend(std::iter::repeat_n(Op::Same, suffix));
    ops
}

/// Myers' greedy shortest edit script. `None` when the distance exceeds `MAX_EDIT_DISTANCE`.
fn myers(a: &[&str], b: &[&str]) -> Option<Vec<Op>> {
    let (n, m) = (a.len() as isize, b.len() as isize);
    let max = (a.len() + b.len()).min(MAX_EDIT_DISTANCE) as isize;
    // v[k + offset] = furthest x reached on diagonal k (= x - y).
    let offset = max + 1;
    let mut v = vec![0isize; 2 * offset as usize + 1];
    // Snapshot of v's live window after each round, for walking the path back.
    let mut trace: Vec<Vec<u32>> = Vec::new();
    let idx = |k: isize| (k + offset) as usize;

    let mut found = None;
    'rounds: for d in 0..=max {
        for k in (-d..=d).step_by(2) {
            let down = k == -d || (k != d && v[idx(k - 1)] < v[idx(k + 1)]);
            let mut x = if down {
                v[idx(k + 1)]
            } else {
                v[idx(k - 1)] + 1
            };
            let mut y = x - k;
            while x < n && y < m && a[x as usize] == b[y as usize] {
                x += 1;
                y += 1;
            }
            v[idx(k)] = x;
            if x >= n && y >= m {
                trace.push(v[idx(-d)..=idx(d)].iter().map(|&x| x as u32).collect());
                found = Some(d);
                break 'rounds;
            }
        }
        trace.push(v[idx(-d)..=idx(d)].iter().map(|&x| x as u32).collect());
    }
    let d_final = found?;

    // Walk back from (n, m), one round at a time.
    let mut ops = Vec::with_capacity((n + m) as usize);
    let (mut x, mut y) = (n, m);
    for d in (1..=d_final).rev() {
        let prev = &trace[(d - 1) as usize];
        // prev covers diagonals -(d-1)..=(d-1).
        let at = |k: isize| prev[(k + d - 1) as usize] as isize;
        let k = x - y;
        let down = k == -d || (k != d && at(k - 1) < at(k + 1));
        let prev_k = if down { k + 1 } else { k - 1 };
        let prev_x = at(prev_k);
        let prev_y = prev_x - prev_k;
        // The edit lands on (start_x, _); the rest of the way to (x, y) is a diagonal snake.
        let start_x = if down { prev_x } else { prev_x + 1 };
        ops.extend(std::iter::repeat_n(Op::Same, (x - start_x) as usize));
        ops.push(if down { Op::Insert } else { Op::Delete });
        x = prev_x;
        y = prev_y;
    }
    ops.extend(std::iter::repeat_n(Op::Same, x as usize));
    ops.reverse();
    Some(ops)
}

fn render(a: &[&str], b: &[&str], ops: &[Op]) -> String {
    // Positions in a and b before each op.
    let mut pos = Vec::with_capacity(ops.len() + 1);
    let (mut i, mut j) = (0usize, 0usize);
    for op in ops {
        pos.push((i, j));
        match op {
            Op::Same => {
                i += 1;
                j += 1;
            }
            Op::Delete => i += 1,
            Op::Insert => j += 1,
        }
    }
    pos.push((i, j));

    let changes: Vec<usize> = (0..ops.len()).filter(|&t| ops[t] != Op::Same).collect();
    let mut out = String::new();
    let mut c = 0;
    while c < changes.len() {
        // Grow the hunk while the next change is close enough that their contexts touch.
        let first = changes[c];
        let mut last = first;
        c += 1;
        while c < changes.len() && changes[c] - last <= 2 * CONTEXT + 1 {
            last = changes[c];
            c += 1;
        }
        let start = first.saturating_sub(CONTEXT);
        let end = (last + 1 + CONTEXT).min(ops.len());
        let (a0, b0) = pos[start];
        let (a1, b1) = pos[end];
        let _ = writeln!(out, "@@ -{} +{} @@", range(a0, a1 - a0), range(b0, b1 - b0));
        for (t, op) in ops.iter().enumerate().take(end).skip(start) {
            let (ai, bj) = pos[t];
            let _ = match op {
                Op::Same => writeln!(out, " {}", a[ai]),
                Op::Delete => writeln!(out, "-{}", a[ai]),
                Op::Insert => writeln!(out, "+{}", b[bj]),
            };
        }
    }
    out
}

/// A hunk range as unified diff writes it: 1-based start, and for an empty range the line
/// before it.
fn range(start: usize, len: usize) -> String {
    match len {
        0 => format!("{start},0"),
        1 => format!("{}", start + 1),
        _ => format!("{},{len}", start + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(old: &str, patch: &str) -> String {
        // Rebuild the new text from the old one and the hunks, to check the diff is complete.
        let a: Vec<&str> = old.lines().collect();
        let mut out: Vec<String> = Vec::new();
        let mut i = 0;
        for line in patch.lines() {
            if let Some(h) = line.strip_prefix("@@ -") {
                let spec = h.split(' ').next().unwrap();
                let mut parts = spec.split(',');
                let start: usize = parts.next().unwrap().parse().unwrap();
                let len: usize = parts.next().map_or(1, |l| l.parse().unwrap());
                let begin = if len == 0 { start } else { start - 1 };
                while i < begin {
                    out.push(a[i].to_owned());
                    i += 1;
                }
            } else if let Some(l) = line.strip_prefix(' ') {
                assert_eq!(a[i], l);
                out.push(l.to_owned());
                i += 1;
            } else if let Some(l) = line.strip_prefix('-') {
                assert_eq!(a[i], l);
                i += 1;
            } else if let Some(l) = line.strip_prefix('+') {
                out.push(l.to_owned());
            }
        }
        out.extend(a[i..].iter().map(|s| s.to_string()));
        out.join("\n")
    }

    /// The textbook table, to check the script is as short as an LCS allows.
    fn lcs_len(a: &[&str], b: &[&str]) -> usize {
        let mut t = vec![vec![0usize; b.len() + 1]; a.len() + 1];
        for i in (0..a.len()).rev() {
            for j in (0..b.len()).rev() {
                t[i][j] = if a[i] == b[j] {
                    t[i + 1][j + 1] + 1
                } else {
                    t[i + 1][j].max(t[i][j + 1])
                };
            }
        }
        t[0][0]
    }

    #[test]
    fn small_change_in_the_middle() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let new = "a\nb\nc\nD\ne\nf\ng\nh\n";
        assert_eq!(diff(old, new), "@@ -2,5 +2,5 @@\n b\n c\n-d\n+D\n e\n f\n");
    }

    #[test]
    fn identical_texts_have_no_hunks() {
        assert_eq!(diff("a\nb\n", "a\nb\n"), "");
    }

    #[test]
    fn insert_at_start_and_delete_at_end() {
        let d = diff("a\nb\nc\n", "x\na\nb\n");
        assert_eq!(d, "@@ -1,3 +1,3 @@\n+x\n a\n b\n-c\n");
    }

    #[test]
    fn distant_changes_make_separate_hunks() {
        let old: String = (0..20).map(|i| format!("l{i}\n")).collect();
        let new = old.replace("l2\n", "L2\n").replace("l15\n", "");
        let d = diff(&old, &new);
        assert_eq!(d.matches("@@").count(), 4, "{d}");
        assert!(
            d.contains("@@ -1,5 +1,5 @@\n l0\n l1\n-l2\n+L2\n l3\n l4\n"),
            "{d}"
        );
        assert!(
            d.contains("@@ -14,5 +14,4 @@\n l13\n l14\n-l15\n l16\n l17\n"),
            "{d}"
        );
        assert_eq!(apply(&old, &d), new.trim_end());
    }

    #[test]
    fn empty_sides() {
        assert_eq!(diff("", "a\nb\n"), "@@ -0,0 +1,2 @@\n+a\n+b\n");
        assert_eq!(diff("a\n", ""), "@@ -1 +0,0 @@\n-a\n");
    }

    #[test]
    fn diff_applies_back_on_pseudo_random_edits() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200 {
            let old: Vec<String> = (0..(next() % 30))
                .map(|_| format!("{}", next() % 5))
                .collect();
            let new: Vec<String> = (0..(next() % 30))
                .map(|_| format!("{}", next() % 5))
                .collect();
            let (old, new) = (old.join("\n"), new.join("\n"));
            let d = diff(&old, &new);
            assert_eq!(apply(&old, &d), new, "old={old:?} new={new:?} diff=\n{d}");
            let changed = d
                .lines()
                .filter(|l| !l.starts_with("@@") && (l.starts_with('-') || l.starts_with('+')))
                .count();
            let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
            assert_eq!(
                changed,
                a.len() + b.len() - 2 * lcs_len(&a, &b),
                "not minimal:\n{d}"
            );
        }
    }
}
