# The chart of bench/run.sh: throughput and upstream bytes per scenario.
# run.sh calls it with -e "out='<dir>'" after writing <dir>/chart*.dat.
if (!exists("out")) out = "bench/out"
set terminal svg size 960,420 dynamic font "sans,11" background "#ffffff"
set output out."/chart.svg"
set multiplot layout 1,2 title "regcache and its peers (medians, same run)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key top right font ",9"
set grid ytics
set datafile missing "NaN"
set xtics font ",9"
set bmargin 5
set key noenhanced
set title "Throughput (MB/s, all clients)"
set yrange [0:*]
plot for [i=2:6] out."/chart.dat" using i:xtic(1) title columnheader(i)
set title "Bytes fetched from the upstream (MiB)"
plot for [i=2:6] out."/chart-upstream.dat" using i:xtic(1) title columnheader(i)
unset multiplot
