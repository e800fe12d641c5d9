"""Small helpers shared across birdbridge."""
