-- The guestbook's table; the pipeline's schema step applies it to the
-- test stage's PostgreSQL service and signs the book.
CREATE TABLE guests (
    name TEXT PRIMARY KEY,
    signed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
