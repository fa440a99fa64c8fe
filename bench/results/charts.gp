set terminal svg size 1200,600 dynamic font "sans,11" background rgb "white"
set datafile separator "\t"
set datafile missing "NaN"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xtics rotate by -40 left nomirror font ",9"
set grid ytics
set logscale y
set key top left horizontal
set bmargin 10
set output 'bench/results/rate.svg'
set title "Messages per second (higher is better; line: the crypto limit on all cores)"
set ylabel "messages / s"
plot 'bench/results/rates.tsv' using 2:xtic(1) title 'dkimd' lc rgb '#1b7837', \
     '' using 3 title 'OpenDKIM' lc rgb '#2166ac', \
     '' using 4 title 'rspamd' lc rgb '#b2182b', \
     '' using 5 title 'null milter (floor)' lc rgb '#bbbbbb', \
     '' using 0:6 with linespoints title 'crypto limit' lc rgb 'black' lw 2 pt 7 ps 0.6

set output 'bench/results/cpu.svg'
set title "Milter CPU per message in RSA-2048 signatures (lower is better; line: the crypto work)"
set ylabel "CPU per message / one RSA-2048 signature"
plot 'bench/results/cpu.tsv' using 2:xtic(1) title 'dkimd' lc rgb '#1b7837', \
     '' using 3 title 'OpenDKIM' lc rgb '#2166ac', \
     '' using 4 title 'rspamd' lc rgb '#b2182b', \
     '' using 5 title 'null milter (floor)' lc rgb '#bbbbbb', \
     '' using 0:6 with linespoints title 'crypto limit' lc rgb 'black' lw 2 pt 7 ps 0.6
