"""Image sources: Glance v2 and plain HTTP(S) URLs.

``meta`` says what an image is (id, format, size, the checksum to verify),
``verify`` streams its bytes through bounded buffers checking size and
checksum on the way, ``glance`` and ``http_source`` fetch from the two
kinds of source, ``vhd_footer`` reads a VHD's virtual size from its first
sector, and ``service`` picks the source for a build's ``image`` dict.
Putting the bytes into dom0 is the driver's business.
"""
