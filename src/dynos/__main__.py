from dynos.cli.main import main

main()
