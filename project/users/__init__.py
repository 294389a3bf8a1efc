"""Users: the model, its JSON API and the demonstration `divide` task."""
