#!/bin/bash
# Print fixed instants and numbers as the de_DE.UTF-8 locale and the Europe/Berlin zone format them.
set -euo pipefail

# 1700000000 is 2023-11-14 22:13:20 UTC (winter time), 1690000000 is 2023-07-22 04:26:40 UTC (summer time).
date -d @1700000000 '+date: %A, %-d. %B %Y, %H:%M:%S %Z'
date -d @1690000000 '+date: %A, %-d. %B %Y, %H:%M:%S %Z'
printf "printf: %'d\n" 1234567
python3 /opt/locale-tz-job/report.py
