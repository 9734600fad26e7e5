# Plots bench/spawn's CDFs: gnuplot -e "dir='bench/results/spawn'" bench/spawn/plot.gp
# Reads dir/plot_vars.gp (the peer list) and dir/cdf_<peer>.dat; writes dir/spawn.png.
if (!exists("dir")) dir = "bench/results/spawn"
load dir."/plot_vars.gp"

set terminal pngcairo size 1500,620 font "sans,11" noenhanced
set output dir."/spawn.png"
set multiplot layout 1,2 title "Start latency of a static binary, CDF over all starts (log scale)"
set logscale x
set format x "%g"
set xtics (0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
set xrange [0.2:*]
set yrange [0:1]
set ytics 0.1
set grid xtics mxtics ytics
set key top left box opaque
# Dark, distinct colours (the default yellow is unreadable on white).
colors = "#1b9e77 #d95f02 #7570b3 #e7298a #66a61e #a6761d #000000 #e6ab02"
do for [i=1:8] { set linetype i lc rgb word(colors, i) lw 2 }
set xlabel "milliseconds since the start call"
set ylabel "fraction of starts"

set title "start → first instruction"
plot for [p in peers] dir."/cdf_".p.".dat" using ($2/1000):1 with lines lw 2 title p

set title "start → exit observed"
plot for [p in peers] dir."/cdf_".p.".dat" using ($3/1000):1 with lines lw 2 title p
unset multiplot
