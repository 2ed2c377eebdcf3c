# Lease latency against leases held, from bench/perf's latency.dat (bench/run.sh draws it).
#   gnuplot -e "dir='bench/out'" bench/latency.gp   ->  bench/out/latency.png
if (!exists("dir")) dir = "bench/out"
load dir."/latency-vars.gp"

set terminal pngcairo size 1100,700 font "DejaVu Sans,11"
set output dir."/latency.png"
set title "portd: number lease round trip against leases held (one client; client and daemon on one CPU)"
set xlabel "leases held"
set ylabel "latency, microseconds (log scale)"
set logscale y
set yrange [1:5000]
set xrange [-500:15500]
set xtics ("0" 0, "1,000" 1000, "5,000" 5000, "15,000" 15000)
set grid ytics mytics xtics
set key top left box opaque
set datafile missing "NaN"

# The target: p99 with N held at most 2x p99 of a portd holding none, measured alongside (--range).
plot dir."/latency.dat" using 1:2 with linespoints lw 2 pt 7 lc rgb "#c0392b" title "portd, kernel source (bind 0): p50", \
     ""                 using 1:3 with linespoints lw 2 pt 5 dt 2 lc rgb "#c0392b" title "portd, kernel source: p99", \
     ""                 using 1:4 with linespoints lw 2 pt 7 lc rgb "#2471a3" title "portd --range: p50", \
     ""                 using 1:5 with linespoints lw 2 pt 5 dt 2 lc rgb "#2471a3" title "portd --range: p99", \
     ""                 using 1:11 with linespoints lw 2 pt 1 dt 3 lc rgb "#5dade2" title "portd --range holding none, alongside: p99", \
     ""                 using 1:12 with lines lw 2 dt 4 lc rgb "#27ae60" title "target for --range p99: 2x the none-held p99", \
     ""                 using 1:6 with linespoints lw 2 pt 6 dt 3 lc rgb "#a04000" title "in-process socket+bind(0)+close: p50 (the kernel alone)", \
     ""                 using 1:8 with linespoints lw 2 pt 6 dt 3 lc rgb "#1a5276" title "in-process socket+bind(port)+close: p50", \
     bare_fd_p50 with lines lw 1 dt 5 lc rgb "#7f8c8d" title sprintf("bare SEQPACKET round trip + fd, same CPU, p50 (%.1f us)", bare_fd_p50)
