ByJ`ù@LA„2A2‹0A2âIAˆHA˜
IAú´?AF?Ap'EAq4(A¶A6Aú81A¤AA€4AaVAOÖ8AÜKAëFA†8.Aø)A™¯/AB²5A7æ<AbH?A