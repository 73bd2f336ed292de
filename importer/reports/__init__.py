"""Reports: report.html, the CSV files, rejected.xlsx and the sample sheets."""
