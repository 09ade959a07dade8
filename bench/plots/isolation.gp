# Experiment 6: /cache latency alone and while /calc saturates the server core.
load ARG2."/common.gp"
set output ARG1."/isolation.png"
set title "GET /cache latency at a fixed rate, alone and while ab -c 8 /calc saturates weir's core"
set ylabel "latency (ms)"
set style data histogram
set style histogram errorbars gap 1 lw 2
set style fill solid 0.7 border -1
set yrange [0:*]
set key top left
f = ARG1."/isolation.dat"
plot f using 2:3:4:xtic(1) title "p50" lc rgb "#1f77b4", \
     f using 5:6:7 title "p99" lc rgb "#d62728"
