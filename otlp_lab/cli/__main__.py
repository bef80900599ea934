from otlp_lab.cli import main

main()
