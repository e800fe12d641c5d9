from birdbridge.cli.app import main

main()
