# Sums up cubecl's kernel profile (the summary tables its profiling logger writes at each device
# sync) for the log's last tables, one training step each (`bench`'s synced steps, which it runs
# last): kernels launched, their device time, and the kernel families that take it.
#   awk -v batches="64 512" -v wall="MS MS" -f scripts/kernel-profile.awk kernels.log
# `batches` names the steps in order; `wall` holds each step's unprofiled time in ms, to say how
# busy the GPU is. Used by scripts/gpu-epoch.sh (docs/performance.md#kernel-profile).
function ms(d) {
  if (d ~ /ns$/) return d / 1e6
  if (d ~ /ms$/) return d + 0
  if (d ~ /s$/ && d !~ /[^0-9.]s$/) return d * 1000
  return d / 1000  # µs
}
BEGIN { rows = -1 }
# A kernel's family: its first name part, with a matmul's algorithm or an operation's name
# (`KernelBinop|AddOp`), without the hash of its settings.
function family(name,   p, np, i, out) {
  np = split(name, p, "|")
  for (i = 1; i <= np; i++) { gsub(/^ +| +$/, "", p[i]); sub(/_[0-9a-f]+$/, "", p[i]) }
  out = p[1]
  for (i = 2; i <= np; i++) if (p[i] ~ /Family$/) return out " " p[i]
  if (np > 1 && p[2] != "TensorArgs") out = out " " p[2]
  return out
}
/^\| Name / { rows = 0; next }
/^\| / && !/^\| Total / && rows >= 0 {
  n = split($0, f, "|")
  if (n < 6) next
  name = f[2]; for (i = 3; i <= n - 4; i++) name = name "|" f[i]
  name = family(name)
  d = f[n - 3]; gsub(/ /, "", d); c = f[n - 2] + 0
  rows++; rname[rows] = name; rms[rows] = ms(d); rcount[rows] = c
  next
}
/^\| Total / {
  n = split($0, f, "|"); count = f[n - 2] + 0
  if (count >= 20) {
    t++; kept[t] = rows; total[t] = 0; kernels[t] = count
    for (i = 1; i <= rows; i++) {
      tname[t, i] = rname[i]; tms[t, i] = rms[i]; tcount[t, i] = rcount[i]; total[t] += rms[i]
    }
  }
  rows = -1
}
END {
  nb = split(batches, b, " "); split(wall, w, " ")
  if (t < nb) { print "  fewer profiled steps in the log than expected: " t; exit 1 }
  for (s = 1; s <= nb; s++) {
    k = t - nb + s
    line = sprintf("batch %s: %d kernels, %.1f ms of kernel time", b[s], kernels[k], total[k])
    if (w[s] > 0) line = line sprintf(" against %.1f ms for the step unprofiled: busy %.0f%%", w[s], 100 * total[k] / w[s])
    print line
    delete fam; delete famn; nf = 0
    for (i = 1; i <= kept[k]; i++) {
      x = tname[k, i]
      if (!(x in fam)) { order[++nf] = x; fam[x] = 0; famn[x] = 0 }
      fam[x] += tms[k, i]; famn[x] += tcount[k, i]
    }
    cmd = "sort -t'\t' -k3,3gr | head -n 12 | tr '\t' ' '"
    for (i = 1; i <= nf; i++) {
      x = order[i]
      printf "  %-40s\t%6d launches\t%9.2f ms\t%5.1f%%\n", x, famn[x], fam[x], 100 * fam[x] / total[k] | cmd
    }
    close(cmd)
  }
}
