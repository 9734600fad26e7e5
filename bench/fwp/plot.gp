# Plots bench/fwp's start-latency CDFs: gnuplot -e "dir='bench/results/fwp/start'" bench/fwp/plot.gp
# Reads dir/plot_vars.gp (the peer list) and dir/cdf_<peer>.dat (bench/spawn's report format,
# microseconds); writes dir/fwp.png.
if (!exists("dir")) dir = "bench/results/fwp/start"
load dir."/plot_vars.gp"

set terminal pngcairo size 1500,620 font "sans,11" noenhanced
set output dir."/fwp.png"
set multiplot layout 1,2 title "FWP start latency vs. its peers, CDF over all starts (log scale)"
set logscale x
set format x "%g"
set xtics ("1 µs" 1, "3 µs" 3, "10 µs" 10, "30 µs" 30, "100 µs" 100, "300 µs" 300, "1 ms" 1000, "3 ms" 3000, "10 ms" 10000, "30 ms" 30000, "100 ms" 100000)
set xrange [1:200000]  # from 1 µs: a spinning standby starts in a few
set yrange [0:1]
set ytics 0.1
set grid xtics mxtics ytics
set key bottom right box opaque
# 12 distinct colours; past the 8th the lines are also dashed, so no two peers look alike.
colors = "#1b9e77 #d95f02 #7570b3 #e7298a #66a61e #a6761d #000000 #e6ab02 #a50f15 #1f78b4 #6a3d9a #b15928"
do for [i=1:12] { if (i > 8) { set linetype i lc rgb word(colors, i) lw 2 dt 2 } else { set linetype i lc rgb word(colors, i) lw 2 dt 1 } }
set xlabel "time since the start call"
set ylabel "fraction of starts"

set title "start → first instruction (FWP: the handler's first instruction)"
plot for [i=1:words(peers)] dir."/cdf_".word(peers, i).".dat" using 2:1 with lines lt i title word(peers, i)

set title "start → exit observed"
plot for [i=1:words(peers)] dir."/cdf_".word(peers, i).".dat" using 3:1 with lines lt i title word(peers, i)
unset multiplot
