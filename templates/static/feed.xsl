<?xml version="1.0" encoding="UTF-8"?>
<!-- Shown by a browser that opens atom.xml or rss.xml (their xml-stylesheet instruction):
     what a feed is, its address to copy into a reader, and its entries. Feed readers
     ignore it. XSLT 1.0, which every browser still runs. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:atom="http://www.w3.org/2005/Atom"
    exclude-result-prefixes="atom">
<xsl:output method="html" encoding="UTF-8" indent="yes"
    doctype-system="about:legacy-compat"/>

<xsl:variable name="title" select="atom:feed/atom:title | rss/channel/title"/>
<xsl:variable name="self"
    select="atom:feed/atom:link[@rel='self']/@href | rss/channel/atom:link[@rel='self']/@href"/>
<xsl:variable name="home"
    select="atom:feed/atom:link[@rel='alternate']/@href | rss/channel/link"/>

<xsl:template match="/">
<html lang="en">
<head>
<meta charset="utf-8"/>
<meta name="viewport" content="width=device-width, initial-scale=1"/>
<meta name="robots" content="noindex"/>
<title><xsl:value-of select="$title"/> — web feed</title>
<style>
body { margin: 0 auto; max-width: 46rem; padding: 1rem; color: #1d232a;
  font: 1.05rem/1.6 Georgia, "Times New Roman", serif; }
.about { background: #f6f1e7; border-left: 4px solid #a4262c; padding: .75rem 1rem; }
code { display: block; padding: .5rem; background: #fff; border: 1px solid #e3e6ea;
  overflow-wrap: anywhere; font-size: .95rem; }
a { color: #a4262c; }
.meta { color: #5b6570; font-family: system-ui, sans-serif; font-size: .9rem; }
ol { padding: 0; list-style: none; }
li { margin: 0 0 1rem; }
</style>
</head>
<body>
<h1><xsl:value-of select="$title"/></h1>
<section class="about">
<p><strong>This is a web feed.</strong> Copy this URL into your reader
(NetNewsWire, Feedly, Thunderbird, newsboat…) to follow new articles:</p>
<code><xsl:value-of select="$self"/></code>
<p>Open in:
<a href="https://feedly.com/i/subscription/feed/{$self}">Feedly</a> ·
<a href="https://www.inoreader.com/?add_feed={$self}">Inoreader</a> ·
<a href="feed:{$self}">your default reader</a>
</p>
<p><a href="{$home}">Back to the site</a></p>
</section>
<h2>Latest entries</h2>
<ol>
<xsl:apply-templates select="atom:feed/atom:entry | rss/channel/item"/>
</ol>
</body>
</html>
</xsl:template>

<xsl:template match="atom:entry">
<li>
<a href="{atom:link[@rel='alternate']/@href}"><xsl:value-of select="atom:title"/></a>
<div class="meta"><xsl:value-of select="substring(atom:updated, 1, 10)"/></div>
<p><xsl:value-of select="atom:summary"/></p>
</li>
</xsl:template>

<xsl:template match="item">
<li>
<a href="{link}"><xsl:value-of select="title"/></a>
<div class="meta"><xsl:value-of select="pubDate"/></div>
<p><xsl:value-of select="description"/></p>
</li>
</xsl:template>
</xsl:stylesheet>
