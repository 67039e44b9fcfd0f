"""The CLI's commands, one module per topic; each exports ``COMMANDS``: name -> command."""
