"""The RAID desk: Risk Assessment, Information sharing and Disclosure (capabilities D1-D5)."""
