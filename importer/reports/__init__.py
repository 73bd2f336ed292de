"""Reports: report.html and the CSV files (files.py), rejected.xlsx (workbook.py), both from one view
of the rejected rows (rejected.py); the sample sheets (samples.py)."""
