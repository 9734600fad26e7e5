# Plots bench/channel: gnuplot -e "dir='bench/results/channel'" bench/channel/plot.gp
# Reads dir/plot_vars.gp (the peer list), dir/cdf_<peer>.dat and dir/summary.csv; writes
# dir/channel.png.
if (!exists("dir")) dir = "bench/results/channel"
load dir."/plot_vars.gp"

set terminal pngcairo size 1500,620 font "sans,11" noenhanced
set output dir."/channel.png"
set multiplot layout 1,2 title "Plume channel vs kernel IPC between two processes, 64-byte messages"
colors = "#1b9e77 #d95f02 #7570b3 #e7298a #66a61e #a6761d #000000 #e6ab02"
do for [i=1:8] { set linetype i lc rgb word(colors, i) lw 2 }

set title "round-trip latency, CDF over all round trips (log scale)"
set logscale x
set format x "%g"
set yrange [0:1]
set ytics 0.1
set grid xtics mxtics ytics
set key bottom right
set xlabel "round trip (µs)"
set ylabel "fraction of round trips"
plot for [i=1:words(peers)] dir."/cdf_".word(peers, i).".dat" using 2:1 with lines lt i title word(peers, i)

unset logscale x
set title "one-way throughput (median round)"
set datafile separator ","
set style data histograms
set style fill solid 0.8 border -1
set boxwidth 0.7
set yrange [0:*]
set ytics auto
set grid noxtics ytics
unset key
set xlabel ""
set ylabel "million messages per second"
set xtics rotate by -30
plot dir."/summary.csv" every ::1 using ($7/1e6):xtic(1) lc rgb "#7570b3"
unset multiplot
