from imgroute.cli import entry

entry()
