"""The user's input wing: cells read from the files people have, validated and mapped onto the vocabulary, gene
names matched (the one owner), and the expression rules every layer above reads (organism, counts per 10k)."""
