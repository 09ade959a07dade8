# Experiment 3: /calc requests per second, ab -n 200 -c 10, median with min-max.
load ARG2."/common.gp"
set output ARG1."/calc.png"
set title "GET /calc (sum of i**2, i < 1,000,000), ab -n 200 -c 10: requests per second"
set ylabel "requests per second (log scale)"
set logscale y
set style fill solid 0.7 border -1
set boxwidth 0.6
set xrange [-0.6:*]
set yrange [1:*]
unset key
f = ARG1."/calc.dat"
plot f using 0:2:xtic(1) with boxes lc rgb "#1f77b4", \
     f using 0:2:3:4 with yerrorbars lc rgb "black" pt 0 lw 2, \
     f using 0:2:(sprintf("%.0f", $2)) with labels offset 0,1.2
