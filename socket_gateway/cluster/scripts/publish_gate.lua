local rk = KEYS[1]
return gate(rk, ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1', tonumber(ARGV[4]))
