# Shared style of the bench figures, loaded by the others. Every script: gnuplot -c X.gp RESULTS_DIR PLOTS_DIR
set terminal pngcairo size 1000,640 font "DejaVu Sans,11" noenhanced
set grid lc rgb "#dddddd"
set key top left box opaque
set border lc rgb "#444444"
# one colour and title per server, in UPLOAD_SERVERS order (weirbench/exp1_upload.py), then h2o
array COL[7] = ["#d62728", "#8c0000", "#ff9896", "#1f77b4", "#2ca02c", "#9467bd", "#7f7f7f"]
array T[7] = ["weir (150 ms fixed)", "weir (150 ms fixed), h2load: all C at once", "weir (100-200 ms, as the peers)", "aiohttp (Sanic's app)", "Flask threaded=True", "Flask threaded=False", "h2o"]
