local p, a, node = ARGV[1], ARGV[2], ARGV[3]
return gate(p, a, node, tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6]))
