from difftk_cli.main import main

main()
