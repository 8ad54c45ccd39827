from imgroute.cli import main

main()
