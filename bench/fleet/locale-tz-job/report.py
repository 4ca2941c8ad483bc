"""Print a number, a currency amount and an instant formatted by the process's locale and TZ."""

import locale
import time

locale.setlocale(locale.LC_ALL, "")
print("python number:", locale.format_string("%.2f", 1234567.891, grouping=True))
print("python currency:", locale.currency(1234.5, grouping=True))
print("python time:", time.strftime("%A %d %B %Y %H:%M %Z", time.localtime(1700000000)))
