"""A small newsletter service that uses jobkit the way an application would."""
