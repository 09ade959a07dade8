# Experiment 2: peak RSS and peak VSZ of each server during the /upload runs, against C.
load ARG2."/common.gp"
set terminal pngcairo size 1200,900 font "DejaVu Sans,11" noenhanced
set output ARG1."/memory.png"
f = ARG1."/memory.dat"
set key outside right top
set multiplot layout 2,1
set logscale xy
set xrange [8:1300]
set xtics (10, 20, 30, 40, 50, 100, 200, 500, 1000)
set xlabel "concurrent requests C"
set ylabel "peak RSS (MiB)"
set title "Peak resident memory (RSS) during ab -n C -c C POST /upload"
plot for [w in "1 3 4 5 6"] f using 1:(column(2*int(w))) with linespoints lw 2 pt 7 lc rgb COL[int(w)] title T[int(w)]
set ylabel "peak VSZ (MiB)"
set title "Peak virtual memory (VSZ), the seed's memory axis"
plot for [w in "1 3 4 5 6"] f using 1:(column(2*int(w)+1)) with linespoints lw 2 pt 7 lc rgb COL[int(w)] title T[int(w)]
unset multiplot
