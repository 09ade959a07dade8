# Experiment 5: a /cache hit on weir against the stock h2o binary serving the same bytes from a file.
load ARG2."/common.gp"
set output ARG1."/ceiling.png"
set title "The HTTP ceiling: weir GET /cache (memory hit) vs stock h2o static file, h2load -c 100 -m 10"
set ylabel "requests per second"
set style data histogram
set style histogram errorbars gap 1 lw 2
set style fill solid 0.7 border -1
set yrange [0:*]
set key top right
f = ARG1."/ceiling.dat"
plot f using 2:3:4:xtic(1) title "weir /cache" lc rgb COL[1], \
     f using 5:6:7 title "h2o 2.2.5 (stock binary, static file)" lc rgb COL[7]
