peers = "channel_spin channel_spin5us channel_sleep pipe unix_seqpacket eventfd "
