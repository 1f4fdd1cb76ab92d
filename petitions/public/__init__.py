"""What readers see: the index, letter pages, the API, embeds and the feed."""
