"""One module per command group; each defines click commands and imports heavy things inside them."""
