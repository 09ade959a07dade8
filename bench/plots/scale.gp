# Experiment 4: 10,000 concurrent uploads: throughput against the bound and the no-delay ceiling (left), memory per
# request in flight against the 8 KiB target (right). scale.dat: two blocks (index 0, index 1) of: panel label
# median min max.
load ARG2."/common.gp"
set terminal pngcairo size 1200,560 font "DejaVu Sans,11" noenhanced
set output ARG1."/scale.png"
f = ARG1."/scale.dat"
set multiplot layout 1,2
set style fill solid 0.7 border -1
set boxwidth 0.6
unset key
set xrange [-0.6:2.6]
set yrange [0:*]
set title "POST /upload, 10,000 connections (h2load --h1): req/s"
set ylabel "requests per second"
plot f index 0 using 0:3:xtic(2) with boxes lc rgb COL[1], \
     f index 0 using 0:3:4:5 with yerrorbars lc rgb "black" pt 0 lw 2, \
     f index 0 using 0:3:(sprintf("%.0f", $3)) with labels offset 0,1
set title "RSS per request in flight (KiB); target <= 8 KiB (dashed)"
set ylabel "KiB"
set yrange [0:16]
plot f index 1 using 0:3:xtic(2) with boxes lc rgb COL[4], \
     f index 1 using 0:3:4:5 with yerrorbars lc rgb "black" pt 0 lw 2, \
     f index 1 using 0:3:(sprintf("%.2f", $3)) with labels offset 0,1, \
     8 with lines dt 2 lw 2 lc rgb "black"
unset multiplot
