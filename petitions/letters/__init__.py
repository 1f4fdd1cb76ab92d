"""Letters as their organizers see them: write, publish, close, delete."""
