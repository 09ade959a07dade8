# Experiment 1: time to complete C concurrent POST /upload against C, one line per server, with the bound (top), and
# the same as time over the bound (bottom). Columns of upload_time.dat: C, bound, ab floor, zero-overhead expectation
# for 100-200 ms under ab, then for each server (order of T[] in common.gp): median, min, max, failed marker.
load ARG2."/common.gp"
set terminal pngcairo size 1100,1000 font "DejaVu Sans,11" noenhanced
set output ARG1."/upload_time.png"
f = ARG1."/upload_time.dat"
set multiplot
set size 1,0.6
set origin 0,0.4
set title "POST /upload (5 slots, 150 ms mean delay): time to complete C concurrent requests"
set xlabel "concurrent requests C"
set ylabel "total time (s), log scale"
set logscale xy
set xrange [8:1300]
set yrange [0.2:*]
set xtics (10, 20, 30, 40, 50, 100, 200, 500, 1000)
set key bottom right
plot f using 1:2 with lines lw 2 dt 1 lc rgb "black" title "bound ceil(C/5) x 0.15 s", \
     f using 1:3 with lines lw 1 dt 3 lc rgb "black" title "bound as ab sees it (ab sends its first request alone)", \
     f using 1:4 with lines lw 1 dt 2 lc rgb "#555555" title "zero-overhead server, 100-200 ms, under ab (simulated)", \
     for [i=0:5] f using 1:(column(5+4*i)):(column(6+4*i)):(column(7+4*i)) with yerrorlines lw 2 pt 7 ps 0.8 \
         lc rgb COL[i+1] title T[i+1], \
     for [i=0:5] f using 1:(column(8+4*i)) with points pt 2 ps 2.5 lw 2 lc rgb COL[i+1] notitle, \
     NaN with points pt 2 ps 2 lw 2 lc rgb "black" title "x: some requests failed or timed out (a timeout is drawn at the time limit)"
set size 1,0.4
set origin 0,0
set title "Time over the bound ceil(C/5) x 0.15 s (Flask threaded=False is off this scale: it serialises all C)"
set ylabel "seconds over the bound"
unset logscale y
set yrange [-0.05:1.0]
set key top right
plot f using 1:($3-$2) with lines lw 1 dt 3 lc rgb "black" title "ab floor", \
     f using 1:($4-$2) with lines lw 1 dt 2 lc rgb "#555555" title "zero-overhead, 100-200 ms, under ab", \
     0 with lines lw 2 lc rgb "black" notitle, \
     for [i=0:4] f using 1:(column(5+4*i)-$2):(column(6+4*i)-$2):(column(7+4*i)-$2) with yerrorlines lw 2 pt 7 \
         ps 0.8 lc rgb COL[i+1] notitle
unset multiplot
