"""The page people use: divide in the background, watch tasks finish, add users."""
