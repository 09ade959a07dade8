# Experiment 10: aggregate /upload throughput of N instances sharing one Redis gate against the same instances with
# local gates; the global bound (slots / delay) and N times it dashed. cluster.dat: instances, bound, N x bound, then
# per gate (redis, local): median min max req/s.
load ARG2."/common.gp"
set output ARG1."/cluster.png"
f = ARG1."/cluster.dat"
set title "POST /upload, N instances, 5 slots of 150 ms: aggregate req/s with one shared Redis gate and with local gates"
set xlabel "instances"
set ylabel "requests per second (all instances)"
set xrange [0.5:3.5]
set xtics 1
set yrange [0:*]
set key top left
plot f using 1:3 with lines dt 2 lw 2 lc rgb "#7f7f7f" title "N x bound (local gates' limit)", \
     f using 1:2 with lines dt 2 lw 2 lc rgb "black" title "global bound 5 / 0.15 s", \
     f using 1:4:5:6 with yerrorlines lw 2 pt 7 lc rgb COL[1] title "redis gate (shared)", \
     f using 1:7:8:9 with yerrorlines lw 2 pt 5 lc rgb COL[4] title "local gates"
