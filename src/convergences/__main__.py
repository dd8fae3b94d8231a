from convergences.cli import main

main()
