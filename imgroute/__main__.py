from imgroute.cli.app import entry

entry()
