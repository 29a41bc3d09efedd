"""The report's sections, in reading order. Each module builds one `Section` from `PeriodData`."""
