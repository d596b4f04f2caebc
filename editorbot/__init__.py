"""editorbot: learns how a musician edits raw recordings, and edits new ones the same way."""
__version__ = "0.1.0"
