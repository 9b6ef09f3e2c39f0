"""Gene networks from a trained model: options, the read-out method registry and its one dispatcher, the entry
point (`networks.grn`), attention maths, data networks and rank fusion, in-silico knock-outs, the network file's
one writer, files and resume, head selection, differential networks, edge-table exports and the HTML explorer."""
