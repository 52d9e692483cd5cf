"""Online charging: networks by PLMN, charging sessions, and grants of data quota from buckets."""
