"""Reports from readers and what site admins do about them."""
