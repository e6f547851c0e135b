"""Unit tests of the backup library: the object format, the uploader, the download, errors."""
